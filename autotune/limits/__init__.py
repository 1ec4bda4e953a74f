"""What the GPU sustains with the serving front end out of the way: vLLM's offline engine on the reference workload,
phase by phase (the whole request, the language model alone, prefill alone, decode alone), beside which a served
rate says how far serving is from the engine and which stage takes the difference (`autotune limits`)."""
