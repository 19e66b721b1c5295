"""The sync API: hooks, deliveries, subscriptions. Views parse and call `sync` services."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import NotFound
from core.schema import errors
from sync import hooks, notify
from sync.models import Hook, Subscription
from sync.serializers import (
    DeliveryAnswerSerializer,
    DeliveryAttemptSerializer,
    HookCreatedSerializer,
    HookCreateSerializer,
    HookSerializer,
    SubscriptionCreatedSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
)


@extend_schema(responses={200: HookSerializer, **errors(body=False)})
class HookListView(generics.ListAPIView):
    """Your push hooks; or register one."""

    serializer_class = HookSerializer

    def get_queryset(self):
        return Hook.objects.filter(owner=self.request.user)

    @extend_schema(
        request=HookCreateSerializer,
        responses={201: HookCreatedSerializer, **errors()},
        summary="Register a push hook; the secret is shown once",
    )
    def post(self, request: Request) -> Response:
        serializer = HookCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hook, secret = hooks.create_hook(owner=request.user, **serializer.validated_data)
        hook.secret = secret
        body = HookCreatedSerializer(hook, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class HookDetailView(APIView):
    @extend_schema(responses={200: HookSerializer, **errors(404, body=False)}, summary="A hook")
    def get(self, request: Request, hook_id) -> Response:
        hook = get_object_or_404(Hook, pk=hook_id, owner=request.user)
        return Response(HookSerializer(hook, context={"request": request}).data)

    @extend_schema(request=None, responses={204: None, **errors(404, body=False)})
    def delete(self, request: Request, hook_id) -> Response:
        get_object_or_404(Hook, pk=hook_id, owner=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookDeliveryView(APIView):
    """Where a forge posts push events. No login: the signature is the authentication."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        request={"application/json": {"type": "object"}},
        responses={200: DeliveryAnswerSerializer, **errors(404, 409, 429)},
        summary="Receive a GitHub, GitLab, Gitea or Forgejo push delivery",
    )
    def post(self, request: Request, hook_id) -> Response:
        hook = Hook.objects.filter(pk=hook_id).first()
        if hook is None:
            raise NotFound("No such hook.", field="hook_id")
        # The raw bytes, as signed: parsing first could change them.
        received = hooks.receive(hook=hook, headers=request.headers, body=request.body)
        return Response(DeliveryAnswerSerializer(received).data)


@extend_schema(responses={200: SubscriptionSerializer, **errors(body=False)})
class SubscriptionListView(generics.ListAPIView):
    """Your notification subscriptions; or subscribe a URL to your projects' events."""

    serializer_class = SubscriptionSerializer

    def get_queryset(self):
        return Subscription.objects.filter(owner=self.request.user)

    @extend_schema(
        request=SubscriptionCreateSerializer,
        responses={201: SubscriptionCreatedSerializer, **errors()},
        summary="Subscribe a URL to events; the signing secret is shown once",
    )
    def post(self, request: Request) -> Response:
        serializer = SubscriptionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription, secret = notify.create_subscription(
            owner=request.user, **serializer.validated_data
        )
        subscription.secret = secret
        body = SubscriptionCreatedSerializer(subscription).data
        return Response(body, status=status.HTTP_201_CREATED)


class SubscriptionDetailView(APIView):
    @extend_schema(
        responses={200: SubscriptionSerializer, **errors(404, body=False)},
        summary="A subscription, and whether it is failing",
    )
    def get(self, request: Request, subscription_id) -> Response:
        subscription = get_object_or_404(Subscription, pk=subscription_id, owner=request.user)
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(request=None, responses={204: None, **errors(404, body=False)})
    def delete(self, request: Request, subscription_id) -> Response:
        get_object_or_404(Subscription, pk=subscription_id, owner=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubscriptionResumeView(APIView):
    @extend_schema(
        request=None,
        responses={200: SubscriptionSerializer, **errors(404, body=False)},
        summary="Try a paused or failing subscription again now",
    )
    def post(self, request: Request, subscription_id) -> Response:
        subscription = get_object_or_404(Subscription, pk=subscription_id, owner=request.user)
        return Response(SubscriptionSerializer(notify.resume(subscription)).data)


@extend_schema(responses={200: DeliveryAttemptSerializer, **errors(404, body=False)})
class DeliveryAttemptListView(generics.ListAPIView):
    """A subscription's delivery attempts, newest first."""

    serializer_class = DeliveryAttemptSerializer

    def get_queryset(self):
        subscription = get_object_or_404(
            Subscription, pk=self.kwargs["subscription_id"], owner=self.request.user
        )
        return subscription.attempts.all()
