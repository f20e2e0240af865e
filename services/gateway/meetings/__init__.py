"""Meeting recordings and transcripts: which files can be transcribed as they are (the WebVTT
reader both services use lives in ``services.common.webvtt``)."""
