"""node.ledger"""
