//! `spyglass-alerting`: alert rules, their state, and notifications.
//!
//! It will own rule files, the evaluator, the alert state machine, routing, grouping, silences,
//! inhibition and the notifiers (SMTP through lettre, webhooks). It reads data only through
//! `spyglass-query` and must not know the store's files, OTLP or the UI.
//!
//! Alerting is the work of a later issue; today the crate only fixes its place in the
//! workspace.
