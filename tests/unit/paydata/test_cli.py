import pytest

from services.cli import main


@pytest.mark.parametrize("url", ["ftp://shop.example/open", "shop.example/platDataOpen", "http://"])
def test_a_platform_url_that_is_not_http_is_refused_before_anything_is_sent(url, capsys):
    assert main(["paydata", "platform", "add", "3301963K27", url]) == 2
    assert "is not an http(s) URL" in capsys.readouterr().err


def test_a_request_without_an_order_number_is_refused(capsys):
    assert main(["paydata", "request", "3301963K27:"]) == 2
    assert "give an orderNo" in capsys.readouterr().err
