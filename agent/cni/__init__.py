"""The capture CNI plugin (`mesh-cni`): Istio CNI's role, chained after a network plugin."""
