# EnergyPay: `make demo` runs everything on embedded defaults; `make test` runs the test suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WEBHOOK_PORT ?= 8001
export DJANGO_SETTINGS_MODULE ?= energypay.settings

.PHONY: demo test bench lint check venv clean e2e-assets messages compiled-messages

venv: $(VENV)/.installed compiled-messages

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The translations (locale/, docs/i18n.md). The compiled catalogs (.mo) are committed, so a checkout runs
# with Python alone; where gettext is installed, a catalog (.po) newer than its .mo is compiled again.
compiled-messages: $(VENV)/.installed
	@if command -v msgfmt >/dev/null; then $(BIN)/python manage.py compilemessages --verbosity 0; \
	else echo "gettext is not installed (apt-get install gettext): using the committed locale/*/LC_MESSAGES/django.mo"; fi

# After changing a translatable string: collect the strings into locale/es/LC_MESSAGES/django.po, translate
# the new ones there, then run it again to compile. Needs gettext.
messages: venv
	$(BIN)/python manage.py makemessages -l es --no-obsolete -i ".venv/*" -i "var/*" -i "tests/*"
	$(BIN)/python manage.py compilemessages
	@msgfmt --statistics -o /dev/null locale/es/LC_MESSAGES/django.po

demo: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --webhook-port $(WEBHOOK_PORT)
	@echo ""
	@echo "  EnergyPay is running at http://127.0.0.1:$(PORT)/  (staff: http://127.0.0.1:$(PORT)/admin/)"
	@echo "  Demo login: demo@example.com / demo    Staff login: staff@example.com / demo, then a code printed above"
	@echo "  Webhooks go to the demo receiver on 127.0.0.1:$(WEBHOOK_PORT), which prints each one below."
	@echo "  Live meter readings: $(BIN)/python manage.py simulate_meters --url http://127.0.0.1:$(PORT) (another terminal)."
	@echo "  Ctrl-C stops web, worker, beat and the webhook receiver."
	@echo ""
	@# Quiet: no Celery banners (-q), one solo worker process, no dev-server warning (Django 5.2). The trap
	@# clears itself first: "kill 0" signals this shell too, which would run the trap again, and again.
	@trap 'trap - INT TERM EXIT; kill 0' INT TERM EXIT; \
	$(BIN)/python manage.py webhook_receiver --port $(WEBHOOK_PORT) & \
	$(BIN)/celery -A energypay -q worker --pool=solo --concurrency=1 --loglevel=warning & \
	$(BIN)/celery -A energypay -q beat --loglevel=warning & \
	DJANGO_RUNSERVER_HIDE_WARNING=true $(BIN)/python manage.py runserver 127.0.0.1:$(PORT) --noreload --skip-checks & \
	wait

test: venv e2e-assets
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

# The pinned Chart.js file for the browser tests (the CDN is answered from it) and the pinned axe-core engine
# they check accessibility with; without npm they skip.
e2e-assets: venv
	@$(BIN)/python -c "from tests.e2e.assets import fetch_chart_js; print(fetch_chart_js() or 'Chart.js not fetched: browser tests will skip')"
	@$(BIN)/python -c "from tests.e2e.assets import fetch_axe_core; print(fetch_axe_core() or 'axe-core not fetched: browser tests will skip')"

bench: venv
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: venv
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var energypay.sqlite3*
