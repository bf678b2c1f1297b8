"""A bootstrap node: helps peers find each other, holds no offers."""
