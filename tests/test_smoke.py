from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient


async def test_seed_flow(client: AsyncTestClient[Litestar], make_call: Any) -> None:
    call = await make_call()
    for offer in (2500, 2300.1, 2150):
        r = await client.post(
            f"/api/calls/{call['id']}/negotiate",
            json={"call_id": str(call["id"]), "carrier_offer": offer, "session_id": "sess_x"},
        )
        assert r.status_code == 201, r.text
    r = await client.get("/api/negotiations/session/sess_x")
    assert [x["round_number"] for x in r.json()] == [1, 2, 3]
