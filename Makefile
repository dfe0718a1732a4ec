# Convenience wrappers around dev.sh, which does all set-up on a fresh Debian machine.
.PHONY: demo test clean
demo:
	bash dev.sh demo
test:
	bash dev.sh test
clean:
	rm -rf .venv build dist src/*.egg-info
