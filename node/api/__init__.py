"""node.api"""
