"""Structure-guided video diffusion, character tokens and story rendering."""
