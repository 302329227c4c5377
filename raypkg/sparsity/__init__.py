"""Random sparse masks, the platform's for every method that trains masked weights (sparse
training, LiPT's shard models): their settings (``settings``, free of torch), the masks and
the callback that keeps them (``masks``), and how masked layers compute (``backend``: dense
with the zeros, or SparseProp's kernels, ``kernels``, stepped by ``optim``)."""
