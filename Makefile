# The project's commands; each is a plain script under scripts/ (see README).
.PHONY: run test services services-down bench

run:            ## the portal on its embedded default, with the demo data and Keycloak
	bash scripts/run.sh

test:           ## the whole test suite on the real services (what .ci/run calls)
	bash scripts/test.sh $(ARGS)

services:       ## install where missing and start PostgreSQL, Redis and Keycloak
	bash scripts/services.sh

services-down:  ## stop what `make services` started
	bash scripts/services.sh stop

bench:          ## the benchmark: governed paths against bare baselines (ARGS=--tiny for a quick check)
	bash scripts/bench.sh $(ARGS)
