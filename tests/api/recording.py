"""A recording stand-in for the API's services (``node.api.services``): the HTTP layer's tests
(tests/api/test_api_http.py, test_dashboard.py) run the real app over it."""

from node.api.services import ApiError


class Recording:
    def __init__(self):
        self.calls = []

    def status(self):
        return {"peer_id": "12D3KooTest", "ready": True}

    def peers(self):
        return [{"peer": "p1"}]

    def offers(self, asset, limit):
        self.calls.append(("offers", asset, limit))
        return [{"asset": asset or "BTC", "n": i} for i in range(min(limit, 3))]

    def deposits(self):
        return []

    def contracts(self):
        return []

    def reputation(self):
        return [{"device": "ab", "score": 1.0}]

    async def deposit(self, asset, chunks):
        if asset == "NOPE":
            raise ApiError(400, "unknown asset 'NOPE'")
        self.calls.append(("deposit", asset, chunks))
        return {"asset": asset, "chunks": chunks}

    async def request(self, asset, usd, contract, give="", wait=True, terms=None):
        if give:  # a request to contracts: its report, final (wait) or so far
            self.calls.append(("request", asset, give, wait) + ((contract, terms) if contract == "option" else ()))
            return {"request_id": "r1", "done": wait, "version": 1}
        return {"asset": asset, "usd": usd, "contract": contract}

    async def request_report(self, rid, version, timeout):
        if rid != "r1":
            raise ApiError(404, f"no request {rid!r} on this node")
        self.calls.append(("report", rid, version, timeout))
        return {"request_id": rid, "done": True, "version": version + 1}

    async def sweep(self, deposit, to):
        return {"deposit": deposit, "to": to}

    async def contract(self, peer, give, take, chunks, kind="swap", terms=None):
        self.calls.append(("contract", kind, terms))
        return {"peer": peer, "give": give, "take": take, "chunks": chunks}

    def escrow(self):
        return {"holding": {"contracts": {}, "shares": []}, "recovery_node_of": [], "recoveries": []}

    async def escrow_recover(self, contract):
        self.calls.append(("recover", contract))
        return {"contract": contract, "recovering": []}

    async def revoke(self, kind, target, reason):
        return {"kind": kind, "target": target, "reason": reason}
