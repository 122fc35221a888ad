"""provision: turn Ubuntu GPU machines into container build hosts and ship what they build."""
