"""A submission that prints without end."""

while True:
    print("epoch 1 loss 123.4 " * 20)
