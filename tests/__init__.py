"""The test suite of equirelax (a package, so that its helpers import as ``tests.helpers``)."""
