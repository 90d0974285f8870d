"""The project's OpenAPI documents, installed as the package data `fakeshift.openapi`."""
