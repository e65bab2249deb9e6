"""Forms of the portal's governance actions: one small form per action, fields as the service needs."""
from django import forms

from registry.models import Integration, IntegrationTemplate, ReviewDecision
from scp_core.models import Vertical


class ActionForm(forms.Form):
    """No fields: a confirmation (submit, activate, rotate-secret)."""

    def __init__(self, *args, integration, roles, **kwargs):
        super().__init__(*args, **kwargs)
        self.integration = integration
        self.roles = roles


class ReasonForm(ActionForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class RequiredReasonForm(ActionForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required: it is recorded and shown to the requester.")


class EmbargoForm(RequiredReasonForm):
    until = forms.DateTimeField(required=False, label="Withhold from the person's report until",
                                help_text="Empty lifts the embargo. Only an investigation's disclosures may be embargoed.")


class ApproveForm(ReasonForm):
    cross_tenant_grant = forms.BooleanField(
        required=False,
        label="Grant cross-tenant access",
        help_text="Required when the integration reaches tenants beyond its own.",
    )


class ReviewForm(ActionForm):
    vertical = forms.ModelChoiceField(queryset=Vertical.objects.none())
    decision = forms.ChoiceField(choices=ReviewDecision.choices, widget=forms.RadioSelect)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text="Required to reject.")
    approved_fields = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to approve every field the contract allows; tick some to narrow.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        owned = {vertical_id for tenant_id, vertical_id in self.roles.owned_verticals if tenant_id == self.integration.tenant_id}
        self.fields["vertical"].queryset = self.integration.verticals.filter(id__in=owned)
        contract = self.integration.data_contract
        fields = sorted({f for code in contract.readable_verticals() for f in contract.approvable_fields(code)})
        self.fields["approved_fields"].choices = [(f, f) for f in fields]
        if self.fields["vertical"].queryset.count() == 1:
            self.initial["vertical"] = self.fields["vertical"].queryset.get()


class DeprecateForm(ReasonForm):
    replacement = forms.ModelChoiceField(queryset=Integration.objects.none(), help_text="The integration that replaces this one.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["replacement"].queryset = Integration.objects.filter(tenant_id=self.integration.tenant_id).exclude(
            pk=self.integration.pk
        )


class IntegrationRequestForm(forms.ModelForm):
    """A new request, from a vetted registry template (the usual way) or a contract version."""

    class Meta:
        model = Integration
        fields = ["template", "tenant", "partner", "integration_name", "verticals", "purpose", "purpose_code",
                  "active_from", "active_until"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = IntegrationTemplate.objects.filter(vetted_at__isnull=False)
        self.fields["template"].required = True
        self.fields["purpose_code"].help_text = "One of the tenant's purposes; empty: the template's."
