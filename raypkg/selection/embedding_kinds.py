"""The gradient embeddings a selector may see (``raypkg.selection.embeddings.EmbeddingKind``),
by name, free of torch: the coreset settings offer them (``--embedding``) and the embeddings
check them, and neither imports the other for it."""

EMBEDDINGS = ("full", "bias", "proj")
