//! Instances: onboarding rows, token sources, status.
