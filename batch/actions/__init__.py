"""The action layer: one function per state change, the one place that holds its rules.

Every client (the `batch-admin` CLI, the admin view, tests) signs an action with the person's key
(`batch.identity.sign`: the same canonical bytes everywhere) and hands it, with the control store
(any `batch.ports.ControlPort`), to one of these functions. Each checks, in this order, that the
signed action is the kind expected, that its signer holds the role, the month's phase and locks, and
four eyes; then makes the change through the store, which verifies the signature (fresh, never
replayed) and re-checks role, phase and lock inside its write transaction and appends the audit
entry. It returns an `Outcome`: who did what to which month, one sentence for people, and in
`follows` the Dagster job to submit next (job, month, ticket, tags, run config), if any: the core never
imports Dagster, the client submits it. A refusal raises (ControlError, RoleError, IdentityError,
MonthError) and changes nothing.

    lock(store, signed) -> Outcome                      # "lock", details: admins, ttl_hours
    release(store, signed) -> Outcome                   # "release"
    file_request(store, signed, view_url) -> Outcome             # "request", details: finalize_details(...),
                                                        #   unlock_details(...) or roles_details(...)
    approve(store, signed, *, ticket=None, now=None)    # "approve", details: approval_details(request, ticket);
                                                        #   ticket: make_ticket(..., ticket_job(request), request_id=)
    reject(store, signed, *, now=None) -> Outcome       # "reject", details: request_id, reason
    reissue(store, signed, *, ticket) -> Outcome        # "ticket_issued": repair's new ticket of an approved request
    admit_run(store, ticket, *, month, note=None, home=None) -> Outcome   # a run ticket of execute_job or plan_job
    record_export(store, signed) -> Outcome             # "export", details: what was written, filters
    may(store, action, actor, month) -> str             # the role check alone, before a key is loaded
    may_run(open_store, job, actor, month, *, home=None) -> str   # inputs landed, then the role
    admit_new_run(open_store, job, actor, month, sign, *, note=None, home=None) -> Outcome
                                                        #   may_run, the ticket sign(who) makes, admit_run

`batch.actions.changes` (set_params, adjust) loads the parameter schema and the landed inputs, so it is
imported on its own, by the commands that need it.

A new action: a function here of the same shape (expect, may, the phase check, the store's signed
write, an Outcome), a line in `checks.RULES` for its role, and a test in tests/actions/.
"""

from batch.actions.checks import RULES, may
from batch.actions.locks import lock, release
from batch.actions.outcome import FollowUp, Outcome
from batch.actions.requests import (
    REQUEST_JOBS,
    RULE_REQUEST_FILED,
    announce,
    approval_details,
    approval_link,
    approve,
    file_request,
    finalize_details,
    reissue,
    reject,
    roles_details,
    ticket_job,
    unlock_details,
)
from batch.actions.runs import RUN_JOBS, admit_new_run, admit_run, may_run, record_export, run_job_named

__all__ = ["REQUEST_JOBS", "RULES", "RULE_REQUEST_FILED", "announce", "approval_link", "RUN_JOBS", "FollowUp", "Outcome", "admit_new_run", "admit_run", "approval_details", "approve",
           "file_request", "finalize_details", "lock", "may", "may_run", "record_export", "reissue", "reject", "release",
           "roles_details", "run_job_named", "ticket_job", "unlock_details"]
