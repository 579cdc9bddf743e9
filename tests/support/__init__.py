"""What the tests share: harnesses, fake servers, fixtures and the timeout scale."""
