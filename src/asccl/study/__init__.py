"""User study (issue 8): forced-choice study definition, vote store and analysis."""
