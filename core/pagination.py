"""Pagination of every list: `limit` and `offset` as in DRF, but a value out of range or not a
whole number is refused (400 naming the parameter) instead of silently replaced by the default."""

from rest_framework import pagination

from core.query import BIGINT_MAX, whole_number

MAX_LIMIT = 1000


class StrictLimitOffsetPagination(pagination.LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_limit(self, request) -> int:
        return whole_number(
            request.query_params,
            self.limit_query_param,
            default=self.default_limit,
            minimum=1,
            maximum=self.max_limit,
        )

    def get_offset(self, request) -> int:
        return whole_number(request.query_params, self.offset_query_param, default=0)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0, "maximum": BIGINT_MAX},
        }
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
