//! The job consumer and the launch state machine.
