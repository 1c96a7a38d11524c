"""Settlement: how an ambiguous transfer on a venue without idempotency keys (HTX) is settled.

A resend after an attempt that may have executed could move the money twice, so the engine
settles such an attempt through the account's ledger instead. The pieces, one job each:

* `movements`: at most one unresolved identical movement per account, enforced through the
  journal, so a ledger row can only be one intent's;
* `windows`: the latest time an intent's attempts can have ended, which the settle window
  counts from;
* `reads`: paged ledger scans, shared by concurrent lookups of one account and currency;
* `ledger`: reading the ledger for one intent and accounting its rows (found, absent after
  the settle window, or unclear);
* `sweep`: how a `resume()` sweep's slots are given up while an intent only waits;
* `drive`: the engine's loop for such a venue: take the movement's turn, send, and after an
  ambiguous answer settle through the ledger before any resend.
"""
