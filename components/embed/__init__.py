"""The embedding stage: Examples -> the same Examples with Inception-ResNet-v2's class vector."""
