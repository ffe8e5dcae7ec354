"""Process set-up on CPU hosts: malloc choice (malloc.py), glibc and oneDNN memory settings (memory.py), Keras' optional imports (keras_extras.py), Grappler options (grappler.py)."""
