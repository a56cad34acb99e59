"""Creates the test user and the two clients, both redirecting to BASE/cb:
- webapp: confidential (client_secret_basic or client_secret_post), authorization code + PKCE;
- spa: public (no secret), authorization code + PKCE."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from oauth2_provider.models import get_application_model

USERNAME, PASSWORD = "alice", "alice-password-0001"
WEBAPP_SECRET = "webapp-secret-0001"


class Command(BaseCommand):
    help = "create the test user and clients"

    def add_arguments(self, parser):
        parser.add_argument("base", help="https://localhost:PORT")

    def handle(self, *args, base, **options):
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first() or User.objects.create_user(
            USERNAME, email="alice@example.test", password=PASSWORD)
        Application = get_application_model()
        for client_id, client_type, secret in (("webapp", Application.CLIENT_CONFIDENTIAL, WEBAPP_SECRET),
                                               ("spa", Application.CLIENT_PUBLIC, "")):
            Application.objects.filter(client_id=client_id).delete()
            Application.objects.create(
                name=client_id, client_id=client_id, client_secret=secret, client_type=client_type,
                authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=f"{base}/cb",
                algorithm=Application.RS256_ALGORITHM, user=user, skip_authorization=False)
