"""kinto-fxa 2.5.3's documentation (../shared/ORIGINAL_KINTO_FXA_2.5.3.txt): its configuration
lines, verbatim, for the tests that check they keep working as it describes."""

ORIGINAL_INCLUDE = """\
kinto.includes = kinto_fxa
"""
ORIGINAL_POLICY = """\
multiauth.policies = fxa
multiauth.policy.fxa.use = kinto_fxa.authentication.FxAOAuthAuthenticationPolicy
"""
ORIGINAL_CLIENT = """\
fxa-oauth.client_id = 89513028159972bc
fxa-oauth.client_secret = 9aced230585cc0aaea0a3467dd800
fxa-oauth.oauth_uri =
fxa-oauth.requested_scope = profile kinto
fxa-oauth.required_scope = kinto
fxa-oauth.webapp.authorized_domains = *
# fxa-oauth.cache_ttl_seconds = 300
# fxa-oauth.state.ttl_seconds = 3600
"""
ORIGINAL_NO_RELIER = """\
fxa-oauth.relier.enabled = false
"""
ORIGINAL_REALM = """\
# multiauth.policy.fxa.realm = Realm
"""
ORIGINAL_CLIENTS = """\
fxa-oauth.clients.notes.client_id = 89513028159972bc
fxa-oauth.clients.notes.required_scope = profile app-notes

fxa-oauth.clients.todo.client_id = 1805184631529d5a
fxa-oauth.clients.todo.required_scope = profile app-todo
"""
