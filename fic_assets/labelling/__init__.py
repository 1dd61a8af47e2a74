"""Human labels: the local Label Studio server (`server`), its client, and the labelling config in label_studio/."""
