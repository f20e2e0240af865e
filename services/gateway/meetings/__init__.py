"""Meeting recordings and transcripts: recognising a transcript file and reading WebVTT."""
