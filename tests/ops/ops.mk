# Operations tests (issue 5): tests/integration/test_{cli,http,auth}.sh use curl and jq, and
# test_http.sh checks a live /metrics page with promtool (Debian package prometheus; its
# promtool lands in /usr/bin).
DEB_PACKAGES += prometheus jq curl
