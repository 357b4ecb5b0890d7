"""All that touches containers: probe (VideoInfo), decode (frame batches), encode (writer)."""
