"""provisioner package."""
