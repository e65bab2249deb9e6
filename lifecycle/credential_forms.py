"""The portal's forms of the credential actions (issue #14 item 5): rotate with a grace period
the rotator chooses, revoke a previous credential before its grace ends."""
from django import forms

from registry.models import Credential

from .credentials import DEFAULT_GRACE_SECONDS, GRACE_CHOICES, token_minutes
from .forms import ActionForm


class RotateForm(ActionForm):
    # Not required: a bare confirmation (an older form) rotates with the service's default grace.
    grace_seconds = forms.TypedChoiceField(
        coerce=int, choices=GRACE_CHOICES, initial=DEFAULT_GRACE_SECONDS, required=False, empty_value=None,
        label="Grace period",
        help_text="How long the previous credential keeps working while the partner switches to the new one.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Said where the choice is made: ending a client secret does not end the tokens got with it.
        self.fields["grace_seconds"].help_text += (
            " For a client secret: once it stops (its grace ends, or it is revoked), tokens already issued with it "
            f"remain valid until they expire, at most {token_minutes()} minutes.")


class RevokeCredentialForm(ActionForm):
    credential = forms.ModelChoiceField(queryset=Credential.objects.none(), label="Previous credential",
                                        help_text="Only previous credentials in their grace period can be revoked.")
    reason = forms.CharField(required=False, max_length=200, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["credential"].queryset = Credential.objects.filter(
            integration=self.integration, revoked_at__isnull=True, expires_at__isnull=False)
        self.fields["credential"].label_from_instance = lambda c: (
            f"{c.get_kind_display()}{' ' + c.prefix + '…' if c.prefix else ''}, issued {c.issued_at:%Y-%m-%d %H:%M}, "
            f"in grace until {c.expires_at:%Y-%m-%d %H:%M} UTC")
