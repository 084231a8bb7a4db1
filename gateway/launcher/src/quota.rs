//! Tenant GPU quota (preflight step of a launch).
