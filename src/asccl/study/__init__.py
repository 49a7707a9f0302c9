"""User study: forced-choice study definition, vote store, analysis and web app (`asccl study`)."""
