//! Kubernetes API types of privnet (group `privnet.io`, version `v1alpha1`).
