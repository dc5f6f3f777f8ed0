"""A unit's life seen from central: enrolment, the provisioner, revocation and config pushes."""
