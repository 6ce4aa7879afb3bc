"""RFC 6241 configuration operations: get, get-config, edit-config, copy-config,
delete-config, lock, unlock, validate, commit, discard-changes."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

from lxml import etree

from agent.datastore.edit import Editor, changed_entries, prune_changed
from agent.datastore.tree import PathMaker, client_prefixes, new_root, prune_empty
from agent.datastore.validate import Validator
from agent.protocol.errors import PROTOCOL, RpcError, RpcErrors, bad_element
from agent.protocol.namespaces import NC, WD
from agent.protocol.session import RpcContext
from agent.rpc.params import (
    check_params,
    child,
    datastore_param,
    enum_param,
    with_defaults_param,
)

if TYPE_CHECKING:
    from agent.server import NetconfServer

log = logging.getLogger(__name__)

P_SOURCE = f"{{{NC}}}source"
P_TARGET = f"{{{NC}}}target"
P_FILTER = f"{{{NC}}}filter"
P_CONFIG = f"{{{NC}}}config"
P_WD = f"{{{WD}}}with-defaults"


def register(server: NetconfServer) -> None:
    ops = ConfigOps(server)
    d = server.dispatcher
    for name in (
        "get", "get-config", "edit-config", "copy-config", "delete-config", "lock", "unlock",
        "validate", "commit", "discard-changes",
    ):
        d.register(NC, name, getattr(ops, name.replace("-", "_")))


class ConfigOps:
    def __init__(self, server: NetconfServer) -> None:
        self.server = server
        self.schema = server.schema
        self.ds = server.datastores

    # ------------------------------------------------------------------ helpers
    def _data(self, content: bytes) -> bytes:
        return content  # already a <data xmlns=NC> element

    def _build(self, config: etree._Element, ctx: RpcContext) -> etree._Element:
        """A validated tree from inline <config> content (copy-config / validate)."""
        tree = new_root()
        paths = PathMaker(self.schema, client_prefixes(config))
        res = Editor(self.schema, tree, paths=paths).apply(config, "merge")
        prune_empty(tree, self.schema)
        Validator(self.schema, paths).validate(tree, res.touched)
        return tree

    def _validated(self, tree: etree._Element) -> etree._Element:
        Validator(self.schema, PathMaker(self.schema)).validate(tree)
        return tree

    # ------------------------------------------------------------------ get
    def get(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {P_FILTER, P_WD})
        return self.server.retriever.retrieve(
            self.ds["running"].tree,
            with_state=True,
            filter_elem=child(op, "filter"),
            wd_mode=with_defaults_param(op),
        )

    def get_config(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {P_SOURCE, P_FILTER, P_WD})
        src = datastore_param(op, "source")
        return self.server.retriever.retrieve(
            self.ds[src].tree,
            with_state=False,
            filter_elem=child(op, "filter"),
            wd_mode=with_defaults_param(op),
        )

    # ------------------------------------------------------------------ edit
    def edit_config(self, ctx: RpcContext, op: etree._Element):
        check_params(
            op,
            {P_TARGET, P_CONFIG, f"{{{NC}}}default-operation", f"{{{NC}}}test-option",
             f"{{{NC}}}error-option", f"{{{NC}}}url"},
        )
        target = datastore_param(op, "target", ("running", "candidate"))
        default_op = enum_param(op, "default-operation", ("merge", "replace", "none"), "merge")
        test_option = enum_param(
            op, "test-option", ("test-then-set", "set", "test-only"), "test-then-set"
        )
        error_option = enum_param(
            op, "error-option", ("stop-on-error", "continue-on-error", "rollback-on-error"),
            "stop-on-error",
        )
        config = child(op, "config")
        if config is None:
            if child(op, "url") is not None:
                raise RpcError("operation-not-supported", "the :url capability is not supported",
                               type=PROTOCOL, info=[bad_element("url")])
            raise RpcError("missing-element", "missing <config> parameter", type=PROTOCOL,
                           info=[bad_element("config")])
        return self.edit(ctx, target, config, default_op, test_option, error_option)

    def edit(
        self,
        ctx: RpcContext,
        target: str,
        config: etree._Element,
        default_op: str = "merge",
        test_option: str = "test-then-set",
        error_option: str = "stop-on-error",
        op_name: str = "edit-config",
    ) -> None:
        """Apply the edit in ``config`` to ``target`` (edit-config, RFC 8526 edit-data)."""
        self.ds.check_writable(target, ctx.session_id)
        store = self.ds[target]
        # an edit of a tree known valid (and pruned) is pruned and validated incrementally
        incremental = default_op != "replace" and store.valid
        if default_op == "replace":
            # the request's content replaces the target's, but create / delete in it are
            # checked against what the target holds (data-exists / data-missing)
            work = new_root()
            prior = store.tree
        else:
            work = copy.deepcopy(store.tree)
            prior = None
        paths = PathMaker(self.schema, client_prefixes(config))
        editor = Editor(self.schema, work, error_option=error_option, paths=paths, prior=prior)
        result = editor.apply(config, default_op)
        if incremental:
            prune_changed(work, self.schema, result)
        else:
            prune_empty(work, self.schema)
        # RFC 7950 §8.3.3: the constraints of running are enforced at the end of every
        # edit-config, so test-option "set" skips validation only for the candidate.
        valid = test_option != "set" or target == "running"
        validator = Validator(self.schema, paths)
        if valid:
            try:
                validator.validate(
                    work, result.touched, removed=result.removed if incremental else None,
                    created=result.created)
            except RpcErrors as exc:  # continue-on-error: keep the edit errors too
                raise RpcErrors(result.errors + exc.errors) from None
        if test_option != "test-only" and (result.changed or default_op == "replace"):
            if target == "running":
                # the backends may look at the changed entries only, unless validation
                # deleted nodes (a 'when' turned false) wherever they were
                changed = changed_entries(self.schema, work, result) \
                    if validator.incremental else None
                self.ds.set_running(work, valid=True, changed=changed)
            else:
                self.ds.set_candidate(work, ctx.session_id, valid=valid)
        log.info("session %d: %s %s: %s", ctx.session_id, op_name, target,
                 "changed" if result.changed else "no change")
        if result.errors:  # continue-on-error: the rest was applied
            raise RpcErrors(result.errors)
        return None

    def copy_config(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {P_TARGET, P_SOURCE, f"{{{NC}}}with-defaults", P_WD})
        target = datastore_param(op, "target")
        source = datastore_param(op, "source", allow_config=True)
        if isinstance(source, str):
            if source == target:
                raise RpcError("invalid-value", "source and target are the same datastore",
                               type=PROTOCOL, info=[bad_element("target")])
            tree = self._validated(copy.deepcopy(self.ds[source].tree))
        else:
            tree = self._build(source, ctx)
        self.ds.check_writable(target, ctx.session_id)
        built = not isinstance(source, str)  # pruned and validated by _build
        if target == "running":
            self.ds.set_running(tree, valid=built)
        elif target == "candidate":
            if self.ds.same_as_running(tree):
                self.ds.discard_changes()  # not modified: it can still be locked
            else:
                self.ds.set_candidate(tree, ctx.session_id, valid=built)
        else:
            self.ds.set_startup(tree)
        return None

    def delete_config(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {P_TARGET})
        target = datastore_param(op, "target")
        if target != "startup":
            # ietf-netconf: the target of delete-config is startup or a url, never the
            # running or candidate datastore
            raise RpcError("invalid-value", f"the {target} datastore cannot be deleted",
                           type=PROTOCOL, info=[bad_element("target")])
        self.ds.check_writable(target, ctx.session_id)
        self.ds.set_startup(new_root())
        return None

    # ------------------------------------------------------------------ locks
    def lock(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {P_TARGET})
        self.ds.lock(datastore_param(op, "target"), ctx.session_id,
                     alive=self.server.sessions.__contains__)
        return None

    def unlock(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {P_TARGET})
        self.ds.unlock(datastore_param(op, "target"), ctx.session_id)
        return None

    # ------------------------------------------------------------------ candidate
    def validate(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {P_SOURCE})
        source = datastore_param(op, "source", allow_config=True)
        if isinstance(source, str):
            self._validated(copy.deepcopy(self.ds[source].tree))
        else:
            self._build(source, ctx)
        return None

    def commit(self, ctx: RpcContext, op: etree._Element):
        check_params(op, set())
        # RFC 6241 §8.3.4.1: in-use while running or the candidate is locked by another
        self.ds.check_writable("running", ctx.session_id)
        self.ds.check_writable("candidate", ctx.session_id)
        cand = self.ds["candidate"]
        if cand.valid:  # validated by the edits that made it: nothing to delete either
            tree = copy.deepcopy(cand.tree)
        else:
            # commit what was validated: nodes whose 'when' became false are gone from it
            tree = self._validated(copy.deepcopy(cand.tree))
        self.ds.commit(ctx.session_id, tree, valid=cand.valid)
        log.info("session %d: commit", ctx.session_id)
        return None

    def discard_changes(self, ctx: RpcContext, op: etree._Element):
        check_params(op, set())
        # reverting the candidate modifies it: not while another session holds its lock
        self.ds.check_writable("candidate", ctx.session_id)
        self.ds.discard_changes()
        return None
