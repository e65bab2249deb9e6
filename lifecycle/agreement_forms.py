"""The portal's form of the `accept-agreement` action (issue #14 item 4): the umbrella authority
picks the upload after the sign-off that becomes the integration's agreement."""
from django import forms

from registry.models import DataSharingAgreement

from .agreement_gate import pending_agreements
from .forms import ActionForm


class AcceptAgreementForm(ActionForm):
    agreement = forms.ModelChoiceField(
        queryset=DataSharingAgreement.objects.none(), label="Agreement to accept", empty_label=None,
        help_text="It replaces the agreement in force; its expiry becomes the integration's.")
    reason = forms.CharField(required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agreement"].queryset = pending_agreements(self.integration)
        self.fields["agreement"].label_from_instance = lambda a: (
            f"{a.filename} (sha256 {a.sha256[:12]}…), valid {a.effective_from:%Y-%m-%d} to {a.expires_on:%Y-%m-%d}, "
            f"uploaded {a.uploaded_at:%Y-%m-%d %H:%M} by {a.uploaded_by}")
