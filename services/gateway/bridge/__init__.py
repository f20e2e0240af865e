"""The inter-plugin LLM bridge (``/bridge/v1``): who calls it (``auth``), which agent a name
means (``agents``), its wire shapes (``events``) and its routes (``routes``)."""
