//! Kubernetes resource quantities (`500m`, `2Gi`, `1e3`, ...) parsed into integer units.
