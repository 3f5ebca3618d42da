"""Published weights in our models: a TensorFlow-free checkpoint reader and the musicnn import."""
