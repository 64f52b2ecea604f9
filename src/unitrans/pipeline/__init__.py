"""The UniTrans pipeline: stages, content-addressed cache, variants."""
