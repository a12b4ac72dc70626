"""The seam between the pipeline and a kind of artifact (docs/architecture.md, "The Kind protocol").

The pipeline plans, authorizes, applies and exports items without knowing what they are: each
`PlanItem.kind` names a `Kind` in the mapping the caller hands it (regsync.runs passes the
registry, regsync/kinds/registry.py), and every step that differs between kinds is a method here.
A new kind is one folder under kinds/ that implements this protocol, plus one line in the registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.errors import Interrupted, VerificationError

if TYPE_CHECKING:
    from regsync.content.layout import LayoutBlobs
    from regsync.endpoints import Endpoints
    from regsync.pipeline.plan import ItemDetails, PlanError, PlanItem
    from regsync.pipeline.shard import Shard
    from regsync.policy.models import Policy
    from regsync.policy.section import PolicySection


class RunState(Protocol):
    """What a kind keeps for one apply (the image kind: its blob copier, shared across items)."""

    reused: int   # bytes sent again from partial downloads an earlier (killed) run kept

    def stop(self) -> None:
        """SIGTERM or the deadline: start nothing new."""

    def finish(self) -> list[tuple["PlanItem", Exception]]:
        """Once every transfer is over (a stop included): the state's closing step (a conda target's
        listing written once for the run); the items it could not complete, with why."""


S = TypeVar("S", bound=RunState)


class BundleSink(Protocol):
    """Where export writes: the air-gap bundle (regsync/bundle/), as the kinds see it."""

    leave_out: frozenset[str]       # blobs an earlier bundle carried (--since-bundle)

    @property
    def writer(self) -> Any:  # kinds/image/layout.LayoutWriter, which pipeline/ may not name
        """The OCI layout every kind stores its bytes in (blobs named by their sha256)."""

    def add_ref(self, name: str, manifest: Any, source_digest: str | None = None) -> None:
        """Name a manifest in index.json (`<registry>/<repository>:<tag>` as the policy names its
        source); `source_digest`: the source's digest when the manifest was made from it (a filter)."""

    def add_artifact(self, item: "PlanItem", entry: dict[str, Any]) -> None:
        """An item verified into the bundle: its entry in bundle.json's `artifacts`."""

    def add_entry(self, item: "PlanItem", section: str, entry: dict[str, Any]) -> None:
        """A kind's own record in bundle.json (packages: its `packages` list)."""

    def left_out(self, digests: set[str]) -> None:
        """Blobs not written because the earlier bundle has them."""


class Run:
    """One apply, as every kind sees it: the clients, a pool for sub-transfers, the byte counter
    (progress, bandwidth, and the point where a stop request lands), and `verified`, where a kind
    says its checks passed. A kind never sees the audit trail: apply writes every record."""

    def __init__(self, endpoints: "Endpoints", pool: ThreadPoolExecutor,
                 on_bytes: Callable[[int], None] | None = None,
                 on_verified: Callable[["PlanItem", Evidence], None] | None = None):
        self.endpoints, self.pool = endpoints, pool
        self._on_bytes = on_bytes
        self._on_verified = on_verified
        self.moved = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._states: dict[str, RunState] = {}

    def on_bytes(self, count: int) -> None:
        with self._lock:
            self.moved += count
        if self._on_bytes:
            self._on_bytes(count)
        if self.stopping.is_set():
            # SIGTERM: a download stops within a chunk instead of running to the end of a 2 GB file;
            # its partial and checkpoint (at most a second old) stay for the next run.
            raise Interrupted()

    def verified(self, item: "PlanItem", evidence: Evidence) -> None:
        """Every check of the item passed and nothing on the target names it yet: apply writes its
        `verified` record now, so the trail shows the checks before the push (a push that then fails
        leaves `verified`, then `failed`). A kind that never calls this gets the record when its
        transfer returns, just before `pushed`."""
        if self._on_verified is not None:
            self._on_verified(item, evidence)

    def state(self, key: str, make: Callable[[], S]) -> S:
        """The kind's state for this run under `key`, made on first use."""
        with self._lock:
            if key not in self._states:
                self._states[key] = make()
            return cast(S, self._states[key])  # a key is always made by the same kind's `make`

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            states = list(self._states.values())
        for state in states:
            state.stop()

    def finish(self) -> list[tuple["PlanItem", Exception]]:
        """Once every transfer is over (a stop included): each state's closing step (a conda target's
        listing written once for the run); returns the items it could not complete, with why."""
        with self._lock:
            states = list(self._states.values())
        return [failure for state in states for failure in state.finish()]

    @property
    def reused(self) -> int:
        return sum(state.reused for state in self._states.values())


class Kind(Protocol):
    """A kind of artifact: images, Python packages, conda packages."""

    name: str   # PlanItem.kind, the plan's and the audit trail's word for it

    @property
    def section(self) -> "PolicySection":
        """Its part of the policy: its keys, their checks, its summary lines and clients (a class
        attribute will do)."""

    @property
    def bundle_section(self) -> str | None:
        """Its list in bundle.json (packages: "packages"), if it keeps one (a class attribute will do)."""

    def plan(self, policy: "Policy", endpoints: "Endpoints", jobs: int, shard: "Shard | None",
             diff_target: bool) -> tuple[list["PlanItem"], list["PlanError"]]:
        """The policy's rules of this kind → plan items, read-only. `diff_target=False` (export):
        every selected artifact is planned as a copy, the target unseen."""

    def authorize(self, item: "PlanItem", policy: "Policy") -> object:
        """Recheck: the policy's rule for the item (never the plan's word), after setting
        `item.rule` to its name; raises VerificationError when the policy would not plan it."""

    def read_details(self, fields: dict[str, Any]) -> "ItemDetails":
        """Its part of a saved plan's item (`PlanItem.details`, which writes itself back) from the
        item's keys beside the shared ones, a key written empty left out; ValueError naming a key that
        is not its own or not of its type (regsync.pipeline.plan.read_part does both for a dataclass)."""

    def check_names(self, item: "PlanItem") -> None:
        """A loaded plan's item: every name that becomes a URL or a path is valid (raises InvalidName)."""

    def is_stale(self, item: "PlanItem", endpoints: "Endpoints") -> str | None:
        """A saved plan's item against the target now: why it no longer applies, or None."""

    def transfer(self, item: "PlanItem", run: Run) -> Evidence | AlreadyThere:
        """Fetch, verify (again, against the policy's rule) and push one item; returns what was
        verified and what the push moved, from which apply writes `verified` (unless `run.verified`
        was called first, the moment the checks passed) and `pushed`. A target that already holds
        the item (a saved plan applied again) is no push: `AlreadyThere`, with nothing fetched;
        apply writes `skipped`."""

    def export(self, item: "PlanItem", run: Run, sink: BundleSink) -> Evidence:
        """Fetch and verify one item into the bundle; returns the verification evidence (empty for an
        image whose rule checks no signature: its plan item carries none). Apply writes `verified`."""

    def export_sizes(self, item: "PlanItem", endpoints: "Endpoints", leave_out: frozenset[str]) -> list[int]:
        """The sizes of the files export would write for the item (blobs in `leave_out` are not
        written): a blob is never split across volumes, so one larger than a volume is refused first."""

    def targets(self, policy: "Policy") -> set[str]:
        """The target names the policy's rules of this kind write to (for the audit trail's run record)."""

    def export_stand_ins(self, policy: "Policy") -> dict[str, Any]:
        """Stand-ins for this kind's targets while exporting (they are across the gap: empty)."""

    def bundle_sources(self, bundle: dict[str, Any], policy: "Policy",
                       layout_for: Callable[[str], "LayoutBlobs"]) -> dict[str, Any]:
        """This kind's sources, served from an opened bundle: `layout_for(name)` is the bundle's layout
        for source `name` (a regsync.content.layout.LayoutBlobs: its blobs, index.json's checked bytes)."""

    def verifies_without_bundle(self, rule: Any) -> bool:
        """Whether `rule` (the one authorize returned) refuses every item without evidence that
        verifies against the policy's own trust roots (a signature, an attestation), not only against
        the digests a bundle lists: from an unsigned bundle only such items are imported."""


Kinds = Mapping[str, Kind]   # name → Kind, in plan order: what make_plan, apply_plan and the bundle are given


def kind_of(kinds: Kinds, item: "PlanItem") -> Kind:
    """The Kind of a plan item; a kind this build does not know is refused, never guessed."""
    try:
        return kinds[item.kind]
    except (KeyError, TypeError):
        raise VerificationError(f"not allowed by the policy: unknown kind of artifact '{item.kind}'") from None
