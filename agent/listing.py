"""The entries of HEAD's tree or of the index, listed by one git command and read by several.

The submodule count and summary read the gitlinks of HEAD (`git ls-tree -r HEAD`); the LFS
steps read the tracked regular files and whether any `.gitattributes` is among them (`git
ls-files --stage`). A fresh clone's index is HEAD's tree (`read-tree -mu HEAD` wrote it), so
there one listing of HEAD serves all of them, instead of a git process each.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.git import Git

GITLINK = "160000"
_REGULAR = {"100644": 0o644, "100755": 0o755}


@dataclass(frozen=True)
class Listing:
    """Every entry: path -> (mode, object id), in git's order (a path in conflict in the index
    appears once per stage; the last one listed is kept)."""

    entries: dict[str, tuple[str, str]]

    @property
    def gitlinks(self) -> dict[str, str]:
        """The submodule entries (mode 160000): path -> commit id."""
        return {path: oid for path, (mode, oid) in self.entries.items() if mode == GITLINK}

    @property
    def regular_files(self) -> dict[str, int]:
        """The regular files: path -> file mode (0o644 or 0o755)."""
        return {
            path: _REGULAR[mode] for path, (mode, _) in self.entries.items() if mode in _REGULAR
        }

    @property
    def has_attributes(self) -> bool:
        """Whether a `.gitattributes`, in any folder, is among the entries."""
        return any(path.rpartition("/")[2] == ".gitattributes" for path in self.entries)


def list_head(git: Git, repo: str) -> Listing:
    """HEAD's tree, every folder down (`<mode> <type> <object>\\t<path>` lines)."""
    listing = git.run("ls-tree", "-r", "-z", "HEAD", repo=repo).stdout
    return _parse(listing, object_field=2)


def list_index(git: Git, repo: str) -> Listing:
    """The index (`<mode> <object> <stage>\\t<path>` lines)."""
    listing = git.run("ls-files", "-z", "--stage", repo=repo).stdout
    return _parse(listing, object_field=1)


def _parse(listing: str, *, object_field: int) -> Listing:
    entries = {}
    for entry in listing.split("\0"):
        if not entry:
            continue
        info, _, path = entry.partition("\t")
        fields = info.split(" ")
        entries[path] = (fields[0], fields[object_field] if len(fields) > object_field else "")
    return Listing(entries)
