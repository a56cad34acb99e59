"""Registers the browser test's client application at the running authserver2 (django-oauth-toolkit),
as an administrator would: a confidential client with the app's own redirect_uri. authserver2's
bootstrap creates only clients that redirect to the server's own /cb, and the app listens on a port
known only once it runs, so the test registers it here, through DOT's models, in the server's
database (the server reads clients from it on every request).

Run as: python3 register.py DATA_DIR CLIENT_ID CLIENT_SECRET REDIRECT_URI"""
import os
import sys
from pathlib import Path

AUTHSERVER2 = Path(__file__).resolve().parent.parent / "authserver2"


def main():
    data, client_id, secret, redirect_uri = sys.argv[1:5]
    os.environ["AUTHSERVER2_DATA"] = data
    os.environ["DJANGO_SETTINGS_MODULE"] = "idp.settings"
    sys.path.insert(0, str(AUTHSERVER2))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    from idp.management.commands.bootstrap import USERNAME

    Application = get_application_model()
    Application.objects.filter(client_id=client_id).delete()
    Application.objects.create(
        name=client_id, client_id=client_id, client_secret=secret, client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=redirect_uri,
        algorithm=Application.RS256_ALGORITHM, user=get_user_model().objects.get(username=USERNAME),
        skip_authorization=False)


if __name__ == "__main__":
    main()
