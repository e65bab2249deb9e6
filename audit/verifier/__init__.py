"""The standalone audit verifier (standard library and `cryptography` only), also used by the
portal itself for hashing and checking, so the two can never disagree on the rules."""
