"""Where the images of long jobs come from: data roots, decoding and prefetch threads."""
