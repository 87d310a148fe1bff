"""The MNIST classifier gankit ships for digit metrics (numpy inference).

``train.py`` trains it reproducibly; ``mnist_classifier.safetensors`` holds the weights
and ``mnist_classifier.json`` its card (accuracy, settings, hash).
"""
