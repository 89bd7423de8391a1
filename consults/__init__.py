"""Cloud consultations (云会诊) and remote ward rounds (远程查房), DESIGN §9."""
