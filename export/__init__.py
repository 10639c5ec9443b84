"""Run directory → TFLite variants (fp32, fp16, int8, ...), each verified against Keras."""
