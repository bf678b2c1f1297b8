"""node.assets"""
